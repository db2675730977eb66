from evoroute.cli import main

raise SystemExit(main())
