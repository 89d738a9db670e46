from vidprism_ds.model.local_dispatch import LocalDispatcher


class RecordingDispatcher(LocalDispatcher):
    """Runs the experts locally and keeps what each one was given (set as a head's ``dispatcher``)."""

    def __init__(self):
        self.inputs = None

    def __call__(self, streams, experts):
        self.inputs = list(streams)
        return super().__call__(streams, experts)
