"""Published top-1 accuracy of each registered network (for `jaxcnn.summary --compare`).

Generated from the project's reference table (shared/reference/reference_numbers.json: each
figure is the torchvision / timm weights' evaluation or the paper's table, as its source says);
networks without a published figure are absent."""

# name -> (top-1 %, dataset, source)
PUBLISHED_TOP1: dict[str, tuple[float, str, str]] = {
    "alexnet": (
        56.522,
        "ImageNet-1k val",
        "torchvision AlexNet_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "alexnet_2012": (
        59.3,
        "ImageNet-1k val",
        "paper: Krizhevsky et al. 2012, Table 2; Caffe model zoo bvlc_alexnet README",
    ),
    "densenet121": (
        74.434,
        "ImageNet-1k val",
        "torchvision DenseNet121_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "densenet161": (
        77.138,
        "ImageNet-1k val",
        "torchvision DenseNet161_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "densenet169": (
        75.6,
        "ImageNet-1k val",
        "torchvision DenseNet169_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "densenet201": (
        76.896,
        "ImageNet-1k val",
        "torchvision DenseNet201_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "densenet40_k12": (94.76, "CIFAR-10 test", "paper: Huang et al. 2017, Table 2"),
    "densenet_bc100_k12": (95.49, "CIFAR-10 test", "paper: Huang et al. 2017, Table 2"),
    "densenet_bc190_k40": (96.54, "CIFAR-10 test", "paper: Huang et al. 2017, Table 2"),
    "densenet_bc250_k24": (96.38, "CIFAR-10 test", "paper: Huang et al. 2017, Table 2"),
    "efficientnet_b0": (
        77.692,
        "ImageNet-1k val",
        "torchvision EfficientNet_B0_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "efficientnet_b1": (
        78.642,
        "ImageNet-1k val",
        "torchvision EfficientNet_B1_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "efficientnet_b2": (
        80.608,
        "ImageNet-1k val",
        "torchvision EfficientNet_B2_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "efficientnet_b3": (
        82.008,
        "ImageNet-1k val",
        "torchvision EfficientNet_B3_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "efficientnet_b4": (
        83.384,
        "ImageNet-1k val",
        "torchvision EfficientNet_B4_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "efficientnet_b5": (
        83.444,
        "ImageNet-1k val",
        "torchvision EfficientNet_B5_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "efficientnet_b6": (
        84.008,
        "ImageNet-1k val",
        "torchvision EfficientNet_B6_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "efficientnet_b7": (
        84.122,
        "ImageNet-1k val",
        "torchvision EfficientNet_B7_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "googlenet_tv": (
        69.778,
        "ImageNet-1k val",
        "torchvision GoogLeNet_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "inception_resnet_v2": (
        80.434,
        "ImageNet-1k val",
        "timm results-imagenet.csv inception_resnet_v2.tf_in1k @ 299",
    ),
    "inception_v3": (
        77.294,
        "ImageNet-1k val",
        "torchvision Inception_V3_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "inception_v4": (
        80.144,
        "ImageNet-1k val",
        "timm results-imagenet.csv inception_v4.tf_in1k @ 299",
    ),
    "mobilenet_v1": (70.6, "ImageNet-1k val", "paper: Howard et al. 2017, Table 8"),
    "mobilenet_v2": (
        71.878,
        "ImageNet-1k val",
        "torchvision MobileNet_V2_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "mobilenet_v3_large": (
        74.042,
        "ImageNet-1k val",
        "torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "mobilenet_v3_small": (
        67.668,
        "ImageNet-1k val",
        "torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "nasnet_a_large": (
        82.638,
        "ImageNet-1k val",
        "timm results-imagenet.csv nasnetalarge.tf_in1k @ 331",
    ),
    "nasnet_a_mobile": (74.0, "ImageNet-1k val", "paper: Zoph et al. 2018, Table 3"),
    "pnasnet5large": (
        82.814,
        "ImageNet-1k val",
        "timm results-imagenet.csv pnasnet5large.tf_in1k @ 331",
    ),
    "preact_resnet1001": (95.08, "CIFAR-10 test", "paper: He et al. 2016, Tables 3-4"),
    "preact_resnet110": (
        93.63,
        "CIFAR-10 test",
        "paper: He et al. 2016 (Identity Mappings), Table 3",
    ),
    "preact_resnet164": (94.54, "CIFAR-10 test", "paper: He et al. 2016, Table 3"),
    "resnet101": (
        77.374,
        "ImageNet-1k val",
        "torchvision ResNet101_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "resnet110": (93.57, "CIFAR-10 test", "paper: He et al. 2015, Table 6"),
    "resnet1202": (92.07, "CIFAR-10 test", "paper: He et al. 2015, Table 6"),
    "resnet152": (
        78.312,
        "ImageNet-1k val",
        "torchvision ResNet152_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "resnet18": (
        69.758,
        "ImageNet-1k val",
        "torchvision ResNet18_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "resnet20": (91.25, "CIFAR-10 test", "paper: He et al. 2015, Table 6"),
    "resnet200": (78.2, "ImageNet-1k val", "paper: He et al. 2016 (Identity Mappings), Table 5"),
    "resnet32": (92.49, "CIFAR-10 test", "paper: He et al. 2015, Table 6"),
    "resnet34": (
        73.314,
        "ImageNet-1k val",
        "torchvision ResNet34_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "resnet44": (92.83, "CIFAR-10 test", "paper: He et al. 2015, Table 6"),
    "resnet50": (
        76.13,
        "ImageNet-1k val",
        "torchvision ResNet50_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "resnet56": (93.03, "CIFAR-10 test", "paper: He et al. 2015, Table 6"),
    "resnetv2_152": (78.9, "ImageNet-1k val", "paper: He et al. 2016, Table 5"),
    "resnetv2_200": (79.3, "ImageNet-1k val", "paper: He et al. 2016, Table 5"),
    "resnetv2_50": (
        80.41,
        "ImageNet-1k val",
        "timm results-imagenet.csv resnetv2_50.a1h_in1k @ 224",
    ),
    "resnext101_32x8d": (
        79.312,
        "ImageNet-1k val",
        "torchvision ResNeXt101_32X8D_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "resnext101_64x4d": (
        83.246,
        "ImageNet-1k val",
        "torchvision ResNeXt101_64X4D_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "resnext50_32x4d": (
        77.618,
        "ImageNet-1k val",
        "torchvision ResNeXt50_32X4D_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "se_resnet50": (
        77.65,
        "ImageNet-1k val",
        "timm results-imagenet.csv legacy_seresnet50.in1k @ 224",
    ),
    "se_resnext50_32x4d": (
        79.08,
        "ImageNet-1k val",
        "timm results-imagenet.csv legacy_seresnext50_32x4d.in1k @ 224",
    ),
    "senet154": (81.32, "ImageNet-1k val", "timm results-imagenet.csv legacy_senet154.in1k @ 224"),
    "shufflenet_v1_g3": (67.4, "ImageNet-1k val", "paper: Zhang et al. 2018, Table 2"),
    "shufflenet_v2_x0_5": (
        60.552,
        "ImageNet-1k val",
        "torchvision ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "shufflenet_v2_x1_0": (
        69.362,
        "ImageNet-1k val",
        "torchvision ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "shufflenet_v2_x1_5": (
        72.996,
        "ImageNet-1k val",
        "torchvision ShuffleNet_V2_X1_5_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "shufflenet_v2_x2_0": (
        76.23,
        "ImageNet-1k val",
        "torchvision ShuffleNet_V2_X2_0_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "vgg11": (
        69.02,
        "ImageNet-1k val",
        "torchvision VGG11_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "vgg11_bn": (
        70.37,
        "ImageNet-1k val",
        "torchvision VGG11_BN_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "vgg13": (
        69.928,
        "ImageNet-1k val",
        "torchvision VGG13_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "vgg13_bn": (
        71.586,
        "ImageNet-1k val",
        "torchvision VGG13_BN_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "vgg16": (
        71.592,
        "ImageNet-1k val",
        "torchvision VGG16_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "vgg16_bn": (
        73.36,
        "ImageNet-1k val",
        "torchvision VGG16_BN_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "vgg19": (
        72.376,
        "ImageNet-1k val",
        "torchvision VGG19_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "vgg19_bn": (
        74.218,
        "ImageNet-1k val",
        "torchvision VGG19_BN_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "wide_resnet101_2": (
        78.848,
        "ImageNet-1k val",
        "torchvision Wide_ResNet101_2_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "wide_resnet50_2": (
        78.468,
        "ImageNet-1k val",
        "torchvision Wide_ResNet50_2_Weights.IMAGENET1K_V1 (docs table / weights meta)",
    ),
    "wrn16_8": (95.73, "CIFAR-10 test", "paper: Zagoruyko & Komodakis 2016, Table 5"),
    "wrn28_10": (96.0, "CIFAR-10 test", "paper: Zagoruyko & Komodakis 2016, Tables 4-6"),
    "wrn40_4": (95.47, "CIFAR-10 test", "paper: Zagoruyko & Komodakis 2016, Table 5"),
    "zfnet": (61.6, "ImageNet-1k val", "paper: Zeiler & Fergus 2013, Table 2; ILSVRC-2013 results"),
    "zfnet_b": (62.5, "ImageNet-1k val", "paper: Zeiler & Fergus 2013, Table 2 row (b)"),
}
