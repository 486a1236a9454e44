import Control
print("interlock")
