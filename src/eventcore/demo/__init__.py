"""Demo domains that ``eventcore demo`` runs and checks. Examples, not library API."""
