"""At the clinic: a bundle validated on the site's own films, by subgroup, and re-thresholded
into a new signed bundle when the site's operating point moved (``edgevcf validate``).

``plan`` sizes the study before films are collected; ``score`` runs the bundle (and its FP32
baseline) on the site's films as the cart would; ``analysis`` computes the figures overall and
per subgroup; ``protocol`` judges the site's pre-written acceptance rules; ``rethreshold``
writes the site bundle; ``report`` the Markdown and figures; ``validate`` runs them in order.
"""
