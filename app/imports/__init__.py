"""Client import and export (CL-IO): parse → map → validate → upsert, ImportJob, exports."""
