"""tick2trade.host"""
