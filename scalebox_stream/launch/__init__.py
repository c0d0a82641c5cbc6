"""The CLI's use cases, one function each: `run.run_app` (`scalebox run`), `operations` (tasks, module commands,
cleaning up, the projection), `views` (reading the perspective), `mirror`. The CLI parses, calls them, prints."""
