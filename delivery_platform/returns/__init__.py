"""Files vendors send back: one pipeline (pipeline.py) for every feed, fed by descriptions that live
beside each vendor's document (vendors/idomoo/downloads.py, vendors/digital_audience/matches.py)."""
