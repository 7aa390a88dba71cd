"""What the compute engines raise."""


class ComputeError(RuntimeError):
    """The compute engine could not run the step (cluster unreachable, gone mid-step, past
    its timeout); ``str(err)`` says what happened and what to do. Nothing was written."""
