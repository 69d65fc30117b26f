import SlipwayCore
print(SlipwayVersion.string)
