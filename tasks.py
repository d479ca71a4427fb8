"""invoke entry point: `inv --list`. Thin on purpose; the logic lives in the iosops package."""
import signal

from invoke import Collection

# `inv ... | head` must end quietly, like any Unix tool, not with a BrokenPipeError traceback.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)

from iosops.tasks import backup, build, ci, config, deploy, images, k8s, lock, monitoring, stack  # noqa: E402

ns = Collection()
ns.add_task(build.build)
ns.add_task(stack.up)
ns.add_task(stack.down)
ns.add_task(backup.backup)
ns.add_task(backup.restore_)
ns.add_task(backup.dr_drill)
ns.add_collection(Collection("backups", backup.list_, backup.verify, backup.prune))
ns.add_task(deploy.deploy)
ns.add_task(deploy.rollback)
ns.add_task(deploy.provision)
ns.add_task(deploy.verify_hosts)
ns.add_collection(Collection.from_module(ci, name="ci"))
ns.add_collection(Collection.from_module(config, name="config"))
ns.add_collection(Collection.from_module(images, name="images"))
ns.add_collection(Collection.from_module(k8s, name="k8s"))
ns.add_collection(Collection.from_module(lock, name="lock"))
ns.add_collection(Collection.from_module(monitoring, name="monitoring"))
