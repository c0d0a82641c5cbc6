"""Deploying an app and supervising its agents and projector on this machine (`scalebox run`)."""
