"""Pure analysis behind the run monitor, no widgets: the loss history at every zoom
(``loss_history``), the guide's red flags read from a run (``red_flags``) and the text plot
that draws a series (``plot``).
"""
