"""The prepared GPU run of the fused GN kernels: ``bash benchmarks/gpu/run.sh`` (docs/fused_gn.md)."""
