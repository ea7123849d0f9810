from pocketserve.cli import main

raise SystemExit(main())
