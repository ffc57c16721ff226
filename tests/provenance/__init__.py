"""What an output says about itself: disclosure, C2PA, licences, `lusd inspect`, cost."""
