"""Small building blocks that several unlearning methods share (noise learning, distillation,
relabelling, parameter importance, frozen BatchNorm). They register nothing."""
