"""tick2trade.sim"""
