from recli.entry import main

main()
