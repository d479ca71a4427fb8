"""invoke entry point: `inv --list`. Thin on purpose; the logic lives in the iosops package."""
from invoke import Collection

from iosops.tasks import build, ci, config, deploy, images, lock, stack

ns = Collection()
ns.add_task(build.build)
ns.add_task(stack.up)
ns.add_task(stack.down)
ns.add_task(deploy.deploy)
ns.add_task(deploy.rollback)
ns.add_task(deploy.provision)
ns.add_task(deploy.verify_hosts)
ns.add_collection(Collection.from_module(ci, name="ci"))
ns.add_collection(Collection.from_module(config, name="config"))
ns.add_collection(Collection.from_module(images, name="images"))
ns.add_collection(Collection.from_module(lock, name="lock"))
