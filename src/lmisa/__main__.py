from lmisa.cli import main

main()
