"""`lusd batch`, `report`: manifests, the runner, Ray, kills and resumes, the HTML report."""
