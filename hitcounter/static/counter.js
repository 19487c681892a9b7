/* hitcounter snippet: counts this page view, fills [data-hitcounter]. Docs: / on this host */
!function(w,d,nav,loc,KEY,IGNORE){try{
if(w.hitcounter&&w.hitcounter.hit)return
var script=d.currentScript,origin=/^[^:]+:\/\/[^/]+/.exec(script.src)[0],site=data('site'),hash=data('hash')!=null,first=1,last,seq=0,enc=encodeURIComponent
function data(name){return script.getAttribute('data-'+name)}
function noop(){}
function ignored(){try{return localStorage.getItem(KEY)!=null}catch(e){}}
function toggle(){if(loc.hash==IGNORE){try{ignored()?localStorage.removeItem(KEY):localStorage.setItem(KEY,1)}catch(e){}console.info('hitcounter: '+(ignored()?'ignoring':'counting')+' views from this browser')}}
function skipped(){return loc.hash==IGNORE||ignored()||data('allow-local')==null&&(nav.webdriver||loc.protocol=='file:'||/^(localhost|127\.|\[::1\])/.test(loc.hostname))||data('respect-dnt')!=null&&(/1|yes/.test(nav.doNotTrack||w.doNotTrack)||nav.globalPrivacyControl)}
function here(){return data('path')||loc.pathname+(hash?loc.hash.replace('#','%23'):'')}
function fill(counts,n){n==seq&&counts.hits!=null&&(d.readyState=='loading'?d.addEventListener('DOMContentLoaded',function(){fill(counts,n)}):d.querySelectorAll('[data-hitcounter]').forEach(function(el){el.textContent=(el.getAttribute('data-hitcounter')=='site'?counts.site_hits:counts.hits).toLocaleString()}))}
function show(response,n){response.json().then(function(counts){fill(counts,n)}).catch(noop)}
function read(path,n){w.fetch&&fetch(origin+'/api/v1/sites/'+enc(site)+'/count?path='+enc(path),{credentials:'omit'}).then(function(r){show(r,n)},noop)}
function pixel(path,ref,n){var img=new Image;img.onload=img.onerror=function(){read(path,n)};img.src=origin+'/hit/'+enc(site)+'.gif?path='+enc(path)+'&ref='+enc(ref)}
function send(path,force){if(site&&(force||path!=last)){var ref='',n=++seq;last=path
try{first&&new URL(d.referrer).hostname!=loc.hostname&&(ref=d.referrer)}catch(e){}first=0
skipped()?read(path,n):w.fetch?fetch(origin+'/api/v1/hit',{method:'POST',body:JSON.stringify({site:site,path:path,referrer:ref}),headers:{'Content-Type':'text/plain'},keepalive:!0,credentials:'omit'}).then(function(r){show(r,n)},function(){pixel(path,ref,n)}):pixel(path,ref,n)}}
function auto(){try{var wait=d.prerendering?'prerenderingchange':d.visibilityState=='prerender'?'visibilitychange':0;wait?d.addEventListener(wait,auto,{once:!0}):data('auto')!='false'&&send(here())}catch(e){}}
w.hitcounter={hit:function(path){try{send(path||here(),1)}catch(e){}}}
;['pushState','replaceState'].forEach(function(name){var original=history[name];history[name]=function(){var result=original.apply(this,arguments);auto();return result}})
w.addEventListener('popstate',auto)
w.addEventListener('hashchange',function(){try{toggle()}catch(e){}hash&&auto()})
toggle();auto()
}catch(e){}}(window,document,navigator,location,'hitcounter_ignore','#hitcounter-ignore')
