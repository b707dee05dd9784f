from arete_cli.main import main

main()
