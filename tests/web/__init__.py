"""The web app (`lusd serve`): logic, API, browser, load."""
