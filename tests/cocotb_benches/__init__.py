"""cocotb benches used by the tests of the simulation infrastructure.

The modules here are imported by cocotb inside the simulator process (as
``cocotb_benches.<module>``, which works because pytest puts ``tests/`` on
``sys.path`` and ``tick2trade.sim.runner.run`` hands ``sys.path`` on to the
simulator).  ``smoke_design`` is a tiny Amaranth component, ``smoke_bench``
the cocotb test that checks it against a Python model.
"""
