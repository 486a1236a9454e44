import Gateway
print("interlockd")
