"""Weights: conversion to and from torchvision / timm state dicts (`convert`), the published-weights
zoo (`zoo`), and loading a run's or the zoo's weights as initial variables (`loading`)."""
