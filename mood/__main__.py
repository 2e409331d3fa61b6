from mood.cli import main

raise SystemExit(main())
