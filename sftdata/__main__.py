from sftdata.cli import main

main()
