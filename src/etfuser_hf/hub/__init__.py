"""The user-facing surface around a trained model: the Hub model card, ONNX / torch.export export, the demo and the
`etfuser` command line."""
