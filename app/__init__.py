"""ConvNeXtPose Live: the application around the models in `models/`."""
