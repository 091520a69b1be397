"""cocotb benches: test modules the simulators load through the cocotb runner."""
