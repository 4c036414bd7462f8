from recli.cli import main

main()
