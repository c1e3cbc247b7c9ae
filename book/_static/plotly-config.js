// plotly reads this before it loads: typeset figure labels with the site's own MathJax
window.PlotlyConfig = {MathJaxConfig: 'local'};
