"""tick2trade.hdl"""
