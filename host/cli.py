def main():
    print("tick2trade")
