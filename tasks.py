"""invoke entry point: `inv --list`. Thin on purpose; the logic lives in the iosops package."""
import os
import select
import signal
import sys

from invoke import Collection


# `inv ... | head` must end quietly, like any Unix tool, not with a BrokenPipeError traceback. Not by
# SIGPIPE=SIG_DFL: that is process-wide, so a pipeline stage exiting early (zstd/tar on a corrupt backup)
# killed the whole run silently, mid-operation, lock held and nothing recorded.
def _stdout_reader_gone() -> bool:
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError):
        return False


def _quiet_on_closed_stdout(kind, exc, tb, _default=sys.excepthook):
    if issubclass(kind, BrokenPipeError) and _stdout_reader_gone():
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit flush must not fail again
        sys.stderr.flush()
        os._exit(128 + signal.SIGPIPE)  # what a Unix tool's exit looks like when its reader left
    _default(kind, exc, tb)


sys.excepthook = _quiet_on_closed_stdout

from iosops.tasks import backup, build, ci, config, day2, deploy, hosts, images, k8s, lock, monitoring, stack  # noqa: E402

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
ns.add_task(day2.status)
ns.add_task(day2.logs)
ns.add_task(day2.exec_)
ns.add_task(day2.maintenance)
ns.add_collection(Collection("db", day2.psql))
ns.add_collection(Collection.from_module(ci, name="ci"))
ns.add_collection(Collection.from_module(config, name="config"))
ns.add_collection(Collection.from_module(hosts, name="hosts"))
ns.add_collection(Collection.from_module(images, name="images"))
ns.add_collection(Collection.from_module(k8s, name="k8s"))
ns.add_collection(Collection.from_module(lock, name="lock"))
ns.add_collection(Collection.from_module(monitoring, name="monitoring"))
