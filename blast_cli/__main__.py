from blast_cli.main import main

main()
