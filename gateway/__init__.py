"""gateway: the one HTTP door. Routes /api/v1/* and the pages to the services, authenticates sellers."""
