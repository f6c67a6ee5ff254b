from .resnet import BasicBlock, ResNetTiny
from .vit import TinyViT
