from model_core.cli import main

raise SystemExit(main())
