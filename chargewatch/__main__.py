from chargewatch.cli import main

main()
