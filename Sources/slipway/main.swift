import SlipwayCommands

Slipway.main()
