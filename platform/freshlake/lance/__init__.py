"""The processed store in LanceDB: chunk rows with vectors and provenance, kept in step, searched."""
