"""The backbone architectures; importing this package registers each of them."""
from vision.backbones import alexnet, atari, inception, lenet, mobilenet, resnet, unet, vgg  # noqa: F401
