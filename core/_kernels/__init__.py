"""Private CPU and GPU kernels for the render loop: a BatchNorm-folded copy of a ResNet tower
(:mod:`.tower`), convolutions packed for oneDNN (:mod:`.packed_conv`) and bottlenecks with their
ReLUs fused in (:mod:`.fused_resnet`). Not public API: they may change with every release."""
