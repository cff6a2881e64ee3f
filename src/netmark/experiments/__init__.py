"""Paper reproductions (data + one runner → JSON, markdown, PNG) and the demo."""
