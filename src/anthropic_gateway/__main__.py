from anthropic_gateway.cli import main

raise SystemExit(main())
