from evoroute.cli.main import main

raise SystemExit(main())
