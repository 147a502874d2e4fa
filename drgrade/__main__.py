from drgrade.cli import main

main()
