"""Arms the guard in every Python process a sandboxed command starts (this folder is first on
PYTHONPATH), before any of the candidate's code can run. The package is `selfrepair_harness`
inside the sandbox."""

import selfrepair_harness.guard

selfrepair_harness.guard.arm_from_environment()
