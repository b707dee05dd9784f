from arete_cli.launch import main

main()
