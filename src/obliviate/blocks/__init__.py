"""Small building blocks that several unlearning methods share (distillation, relabelling,
parameter importance, frozen BatchNorm). They register nothing."""
