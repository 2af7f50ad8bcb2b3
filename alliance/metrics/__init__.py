"""Numbers only, one module per page: named queries -> statistics -> protected frames and
estimates. No Plotly, no prose."""
