from edge_sync.agent.cli import main

raise SystemExit(main())
